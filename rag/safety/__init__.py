"""Safety stage: triage of every question (urgent care, suicide risk, personal advice) before any answer."""

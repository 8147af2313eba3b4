import json
import os; exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'questions_src.py')).read())
DROP = {21,74,82,100,105,122,131,135,149,163,
        17,31,59,71,77,104,109,116,130,145,148,153,157,161,
        18,70,80,91,95,108,118,125,129,141,152,158,167,
        29,34,45,49,86,94,132,1,12,22,89,164,39,62,69,120,143}
meta = [json.loads(l) for l in open('/work/main/eval/collections/vardguide/docs/metadata.jsonl')]
slug2id = {m['path'].split('/')[1].rsplit('.',1)[0]: m['path'].rsplit('.',1)[0] for m in meta}
rows = []
for i,(kind,q,slug,ev,ans,hist) in enumerate(A):
    if i in DROP: continue
    rows.append(dict(question=q, answerable=True, doc_id=slug2id[slug], evidence=ev, answer=ans, kind=kind, history=hist))
for q in U:
    rows.append(dict(question=q, answerable=False, doc_id="", evidence="", answer="Dokumenten tar inte upp detta.", kind="uncovered", history=[]))
for q in O:
    rows.append(dict(question=q, answerable=False, doc_id="", evidence="", answer="Frågan ligger utanför dokumentens ämne.", kind="off-topic", history=[]))
# interleave deterministically so kinds are mixed: sort by a stable hash-free key
import random
rnd = random.Random(20260108)
rnd.shuffle(rows)
out = []
for n,r in enumerate(rows,1):
    out.append({"id": f"vg{n:03d}", **r})
with open('/work/main/eval/collections/vardguide/questions.jsonl','w',encoding='utf-8') as f:
    for r in out:
        f.write(json.dumps(r, ensure_ascii=False)+"\n")
from collections import Counter
print(Counter(r['kind'] for r in out), len(out), len({r['doc_id'] for r in out if r['doc_id']}))

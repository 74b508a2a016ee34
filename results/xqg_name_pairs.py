"""The entity-copy auxiliary pairs of results/xqg_augmentation_full.md (fourth generator).

For each XOR mini passage: target = its first four capitalised name spans (a sentence-initial
word only when its lower-case form is rare in the corpus), code "en"; written as SWIM-IR-layout
pair records to outputs/corpus_name_pairs.jsonl. Run from the repository root.
"""
import csv, json, os, re, collections
src='../shared/data/xor_mini/corpus.tsv'
rows=list(csv.reader(open(src, newline=''), delimiter='\t'))[1:]
lower=collections.Counter(w for _,t,_ in rows for w in re.findall(r"\b[a-z]+\b", t))
cap=re.compile(r"[A-Z][\w'’.-]*\w|[A-Z]")
STRIP='(),;:"“”'
def names(text, k=4):
    out=[]; words=text.split(); i=0
    while i < len(words) and len(out) < k:
        w=words[i].strip(STRIP)
        start = i == 0 or words[i-1].endswith('.')
        if cap.fullmatch(w) and not (start and lower[w.lower()] > 2):
            span=[]
            while i < len(words):
                wj=words[i].strip(STRIP)
                if not cap.fullmatch(wj) and wj not in ('of', 'de', 'von'): break
                span.append(wj); i+=1
                if words[i-1][-1:] in ',;:)"' or (words[i-1].endswith('.') and len(wj) > 3): break
            while span and span[-1] in ('of', 'de', 'von'): span.pop()
            s=' '.join(span).rstrip('.')
            if s and s not in out: out.append(s)
        else:
            i+=1
    return out
n=0
with open('outputs/corpus_name_pairs.jsonl.tmp','w') as out:
    for pid, text, title in rows:
        ns=names(text)
        if len(ns)<2: continue
        out.write(json.dumps({"_id": f"names-{pid}", "lang": "English", "code": "en", "query": ", ".join(ns), "title": title, "text": text}, ensure_ascii=False)+"\n"); n+=1
os.replace('outputs/corpus_name_pairs.jsonl.tmp','outputs/corpus_name_pairs.jsonl')
print(n)

"""keywords: the `count` most frequent words of `text` (a sandboxed Python agent)."""
import collections
import re

STOP = set("""a an and are as at be but by for from has have in is it its of on or that the
this to was were will with which who not can into than then there these they""".split())


def handler(input, context):
    words = [w for w in re.findall(r"[a-z][a-z'-]+", input.get("text", "").lower())
             if w not in STOP]
    count = int(input.get("count", 5))
    return {"keywords": [w for w, _ in collections.Counter(words).most_common(count)],
            "words": len(words)}

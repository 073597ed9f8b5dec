"""`rmb-judge view`: a read-only local web page to browse the records of one or more runs.

`index` reads the run folders once at start (summary.json, manifest.json, samples.jsonl and
the data files the manifest names, through the benchmark), `adapters` says how a
benchmark's records are shown, and `server` serves the page (`static/`: plain HTML, one
small script and a style sheet; no CDN, no build step) and the paged JSON it fetches. Nothing
here sends a judge request or opens the cache.
"""

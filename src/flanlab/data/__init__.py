"""Where every dataset comes from: a local path, the real-data directory (FLANLAB_DATA), or the Hugging Face Hub.

- `hub.py`: files of a hub dataset repo through huggingface_hub's own cache (only the files a run needs; the commit
  recorded; offline with a cold cache: one line naming the repo, the files and the command that fetches them).
- `catalog.py`: each benchmark's hub repo, revision, configs, license, local layout and how its published files
  become the upstream layout the loaders in evaluate/benchmarks.py read.
- `resolve.py`: the one place a benchmark name becomes a directory plus a record of where it came from.
"""

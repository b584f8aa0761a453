from leakjax.cli import entry

entry()

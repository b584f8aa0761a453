"""One reader per file format; :mod:`leakjax.data.registry` picks one for each data set.

Every reader returns ``leakjax.data.base._Arrays`` (uint8 NHWC images, integer labels and
optionally class names) or raises ``DataError`` / ``ConfigError`` with a one-line message
that names the path.
"""

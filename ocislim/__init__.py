"""ocislim: a daemonless, rootless OCI image minifier."""

__version__ = "0.1.0"

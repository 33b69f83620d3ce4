"""Extensions: components outside the pipelines (health checks, authenticators).

Each module has a ``Factory`` like every component; extensions named in
``service::extensions`` start before the pipelines and stop after them, and components
reach them through the ``Host`` they are given.
"""

"""The core's own lifecycle plugins: evaluation, the metrics file and console progress.

Each module implements lifecycle hooks exactly as a third-party plugin would; they are
registered by :func:`ebmkit._host.plugins.get_plugin_manager` after the entry points.
"""

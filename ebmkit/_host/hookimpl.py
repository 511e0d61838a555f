import pluggy

#: The marker plugins put on their hook implementations.
hookimpl = pluggy.HookimplMarker("ebmkit")

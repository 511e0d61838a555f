"""ebmkit's own plugins, one package each (``ebmkit.plugins.mcmc``, ``ebmkit.plugins.toy``, ...).

They are not part of the core: each is found through its entry point in the ``ebmkit`` group,
exactly as a third-party plugin is, and imports only the public module ``ebmkit`` (and, as any
package may, another plugin). The namespace is ebmkit's own, so that the third-party names
``ebmkit_<name>`` that ``ebmkit new-plugin`` writes never meet them.
"""

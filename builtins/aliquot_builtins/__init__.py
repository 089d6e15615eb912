"""aliquot's builtin plugins: one module (or sub-package) per plugin, one entry point each.

Nothing here is imported by the kernel: the kernel loads these modules through
their entry points exactly as it loads third-party plugins, so each one can be
blocked with ``-p no:NAME``.
"""

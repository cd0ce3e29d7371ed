"""The Ray shell: the only package that imports ``ray``.

``runtime`` starts or joins Ray; ``tasks`` runs stage functions as Ray tasks; ``inline`` is the
in-process test double. Submodules are imported where needed, so importing this package alone
does not import Ray.
"""

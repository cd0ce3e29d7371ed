"""The Ray shell: the only package that imports ``ray``.

``runtime`` starts or joins Ray; ``backend`` is what stages get (tasks, trial actors, Tune,
federated actors, the warm scoring pool); ``inline`` is its in-process twin. Submodules are
imported where needed, so importing this package alone does not import Ray.
"""

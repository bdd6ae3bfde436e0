"""The kernel-pass engine: drives kernels over the eval set and feeds consumers with mergeable state.

``passes`` runs kernels (batching, masks, progress, timing), ``scoring`` turns a batch's outputs
into per-position metrics once, ``accumulate`` holds the numerics summaries. Stages sit above and
judge; metrics and kernels sit below and never import this package.
"""

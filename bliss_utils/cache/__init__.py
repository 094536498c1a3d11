"""The embedding cache, one job a module: what identifies an embedding (:mod:`~bliss_utils.cache.identity`), which
encoder a lookup is for (:mod:`~bliss_utils.cache.request`), files written atomically and verified on read
(:mod:`~bliss_utils.cache.store`), computing a miss (:mod:`~bliss_utils.cache.compute`) and find-or-compute
(:mod:`~bliss_utils.cache.lookup`). The public functions are in :mod:`bliss_utils.embeddings`.
"""

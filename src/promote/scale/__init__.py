"""Scale-out: the offline pass cut into shards (``--shard I/N``), partial files, their merge, and Ray.

``split`` cuts the eval set, ``partial`` is the versioned file format, ``compute`` runs one shard's
consumers, ``merge`` checks and folds partials into stage results, ``ray_engine`` runs the shards as
Ray actors. Nothing here imports Ray at module level (``promote[ray]`` is optional).
"""

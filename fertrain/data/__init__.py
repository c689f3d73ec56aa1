"""The data path: records -> sampler -> reader -> transform -> tensor (see :mod:`fertrain.data.records`)."""

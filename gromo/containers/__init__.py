"""GroMo-compatible containers: ``growing_container`` (GrowingContainer), ``growing_block``
(GrowingBlock, LinearGrowingBlock, Conv2dGrowingBlock) and the networks built from them."""

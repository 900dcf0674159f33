from .mix import MixConfig, CollectionSpec, FormatMix, RegistrySpec, plan_mixture, build_mixture, read_mixture  # noqa: F401

from .mix import (MixConfig, CollectionSpec, FormatMix, RegistrySpec, plan_mixture, build_mixture,  # noqa: F401
                  read_mixture)

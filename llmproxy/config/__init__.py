"""The config: each key declared once (``schema``), the frozen tree and its
load API (``tree``), the generic validating walker (``validate``), the
secret-free views (``views``) and what a rejected file must not show
(``secrets``)."""

from .tree import Config, ConfigError, load_config, parse_config

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]

"""GroMo's ``gromo.config``: the project configuration (see ``gromo.config.loader``)."""

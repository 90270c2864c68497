"""The jobs behind the `fedrec` subcommands that need no Flower."""

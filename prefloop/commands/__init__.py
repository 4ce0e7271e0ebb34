"""One module per `prefloop` subcommand, each with `register(subparsers)`."""

"""The `prefloop` command line: the one place that may import the core and both tiers.

`cli.main` builds the parser; each subcommand lives in `cli/commands/<name>.py` and imports the
tier it drives lazily, inside the command, so `prefloop --help` stays fast. `cli.localstack` and
`cli.tinymodel` serve `prefloop up` (and the tests): starting local services, building tiny models.
"""

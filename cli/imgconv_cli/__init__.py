"""The `imgconv` command: one entry point for every imgconv process (api, worker, operator,
migrate). Subcommands import what they launch lazily, so `imgconv --help` needs no environment."""

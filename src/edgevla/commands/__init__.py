"""The command floor: one module per verb of `edgevla`, each with an `Args` dataclass (parsed
by tyro), a `run(args) -> int` that calls domain functions, prints tables or one JSON object
(`--json`) and returns the exit status. Domain code never prints; errors are raised as
`edgevla.errors` types and turned into one line by `edgevla.cli`.
"""

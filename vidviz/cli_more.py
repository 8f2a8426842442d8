"""Commands added as their subsystems land (explain, precompute, quality, bench)."""


def add_commands(sub, data_args) -> None:
    return None

"""Training DeScore: the two stages (`cold_start`, `rl`), and what every trainer of this library,
the Wan ones included, shares: `config`, `checkpoint`, `distributed`."""

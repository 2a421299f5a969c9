"""edgevla: from recorded demonstrations to real-time robot control on an embedded CPU.

The pipeline flows one way: sim -> dataset -> train -> deploy -> control/eval. The board-side
part (data contract, PolicyRunner, action queue, schedules, control loop) is the separate
`edgevla_runtime` package, which this one depends on.

Importing edgevla registers the simulated task with gymnasium, as gymnasium packages do, so
`gym.make("edgevla/TeaBagMug-v0")` works after `import edgevla` (MuJoCo loads only on make).
"""

import gymnasium

__version__ = "0.1.0"

ENV_ID = "edgevla/TeaBagMug-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="edgevla.sim.env:TeaBagMugEnv")

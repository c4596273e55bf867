"""JupyterHub on cove: ``CoveSpawner`` starts each user's server in a cove
(or LXD) container, as an app session of ``cove.sessions``.

Enable it in ``jupyterhub_config.py`` with ``c.JupyterHub.spawner_class =
"cove"`` (the ``jupyterhub.spawners`` entry point) and see ``CoveSpawner``
for its options. Needs ``jupyterhub`` installed (``pip install
cove[jupyterhub]``).
"""

from cove.jupyterhub._spawner import CoveSpawner

__all__ = ["CoveSpawner"]

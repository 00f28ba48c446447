"""netsweep's Hydra plugins: the launcher (`hydra/launcher=netsweep`), a grid sweeper that treats all its
batches as one sweep (`hydra/sweeper=netsweep`), and the callback that ends a sweep when Hydra's multirun ends."""

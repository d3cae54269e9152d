"""VE-SDE configs (SMLD / NCSN family) on CIFAR-10."""

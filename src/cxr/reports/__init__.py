"""What people read: the comparison report of several runs (`compare`) and each run's model card."""

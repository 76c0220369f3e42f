"""The pin experiments: workloads that hold long-term pins while writeback and reclaim run.

Takes a VM and a cell (kernel, workload, file system, stressors); runs the C workload in the
guest with its stressors, verifies the data on disk, and judges the outcome against the
oracle (``data/oracle.tsv``), giving a ``CellResult``. ``matrix`` lists and runs the cells.
"""

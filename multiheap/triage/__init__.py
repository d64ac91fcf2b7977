"""Fleet triage: many core files at once, on this machine or a Dask cluster.

``multiheap triage CORE...`` (multiheap.triage.run) hands each core to
``analyse_core`` (multiheap.triage.analyse), which runs the CLI's own command path on
it; multiheap.triage.table writes the Parquet table and the summary.  Dask and pyarrow
(the ``triage`` extra) are imported only when triage runs.
"""

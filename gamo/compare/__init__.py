"""The paper's comparison as a command (gamo-reproduce): methods of gamo.methods
over seeds, each run a child process of the training commands, here or on a
Dask cluster; finished runs are reused and interrupted ones resumed.

    runs.py      datasets, launches, reading a finished run
    jobs.py      the job pool: child processes on this machine, or a Dask cluster
    summary.py   the JSON, markdown table and pictures
"""

"""What is made from runs for people to read: the data figures are drawn from (figure_data: plot),
the drawings (drawing), the HTML report (html_report), the table of runs (runs_table: ``runs``) and
the preview of inputs (preview).

Layer rule: a module here imports from ``galaxyzoo_cli.outputs``, ``inference``, ``training``,
``models``, ``data`` and ``core`` only.
"""

"""Fleet runs: many harness runs described by one matrix file, run locally, in GitHub Actions or
as a Kubernetes Indexed Job, and folded into one report.

==============  ===============================================================================
module          job
==============  ===============================================================================
``schema``      the matrix file's JSON Schema (the documentation of its keys)
``loader``      YAML text -> a checked document; schema errors as one line naming case and key
``expand``      a checked document -> the list of cases (defaults, images x flag sets, flags
                checked with ``harness.flagcheck``, names unique)
``case``        one case: its fields, its JSON form, the harness/launcher arguments it runs with
``record``      ``case.json``: what a fleet runner writes beside a case's own artifacts
``local``       ``matrix run``: the cases as ``aero-win7-docker`` subprocesses on this host
``k8s``         ``matrix k8s``: a ConfigMap, a NetworkPolicy and an Indexed Job for a matrix
``runs``        reading one run's folder (results.json, case.json; missing or half-written)
``ranking``     which exit code is the worst
``merge``       many runs -> one junit.xml, results.json, summary.md and index.html
``summary``     the Markdown job summary of a merge
``index``       the index page of a merge (Jinja2)
==============  ===============================================================================
"""

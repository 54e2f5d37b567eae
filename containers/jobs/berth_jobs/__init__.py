"""berth's job runner: the same job code on Lambda and on Fargate.

A job is a function ``(input, workdir) -> None`` that writes its result files into
``workdir``; the runner zips that directory to ``results/<job_id>.zip`` in the results
bucket. A job that raises leaves ``failures/<job_id>.zip`` (error, traceback, input) in the
failures bucket, and the state machine's Catch path adds what Step Functions knows.
"""

"""berth's workspace worker (a terminal worker that needs no Redis and no
orchestrator): SQS in, bash -c in the workspace, output to the WebSocket, files back to S3."""

"""berth's workspace worker (seed 004's CloudIDE terminal worker, without Redis or an
orchestrator): SQS in, bash -c in the workspace, output to the WebSocket, files back to S3."""

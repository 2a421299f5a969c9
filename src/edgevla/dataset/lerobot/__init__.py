"""The LeRobot v3.0 format, inside: where files go (layout), the crash-safe writer (writer,
with staging, consolidate and durable), and the reader. The pipeline stages above it (plan,
record, audit, the torch loader) use LeRobotDatasetWriter and LeRobotDatasetReader."""

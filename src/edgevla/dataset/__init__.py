"""Recorded demonstrations, stage by stage:

plan.py         where to record: clusters, starts, recovery, held-out cluster, eval sets
record.py       the scripted expert through a plan into a dataset (crash-safe, resumable)
audit/          what ruins policies, checked before training
torch_dataset.py, frame_cache.py, stats.py
                what training reads
spec.py, video.py
                what a dataset holds, and its camera streams
lerobot/        the LeRobot v3.0 format inside: layout, writer, reader, staging
"""

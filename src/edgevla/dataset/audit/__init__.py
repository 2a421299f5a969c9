"""`edgevla audit D`: catch what ruins policies before training on a dataset.

The paper's recording rules, turned into checks on the recorded data (each gives pass / warn /
fail lines, a JSON report and figures; any fail makes the command exit 1):

    coverage            episodes per cluster, recovery share, both grasp orientations, the
                        held-out clusters present and never in the training split
    camera consistency  a camera whose view of the static scene moved (a slipped mount)
    lighting            brightness and histogram drift of the static scene
    contrast            object and arm against the background (no white on white)
    integrity           frames and timestamps continuous at fps, finite in-limit joints, one
                        video frame per data row, episode-length outliers
    no cheating         only inputs the policy has at run time

    result = audit_dataset(Path("datasets/teabag"), out=Path("outputs/audit/teabag"))
    result.failed, result.findings, result.report, result.figures, result.to_dict()

An audit never crashes on a damaged dataset: what cannot be read becomes a failing finding,
and the report is written all the same.

Layout: config (thresholds), data (lenient loading), coverage, integrity (+ no cheating),
imaging (image primitives, camera-motion search), views (image checks), figures, run
(audit_dataset: every check, the report, the figures; printing is edgevla.commands.audit).
"""

from edgevla.dataset.audit.config import AuditConfig
from edgevla.dataset.audit.findings import Finding
from edgevla.dataset.audit.run import AuditResult, audit_dataset

__all__ = ["AuditConfig", "AuditResult", "Finding", "audit_dataset"]

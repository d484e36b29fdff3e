//! Reporting: writes report.json and report.html. The report shows the run
//! as it will be once this stage has passed (the stage records itself as
//! passed in a copy of the run before rendering), so a completed vet's
//! report says "completed". If writing fails, the stage fails and there is
//! no report claiming otherwise.

use async_trait::async_trait;
use berth_core::pipeline::{self, StageResult};

use super::{STAGE_REPORTING, VetShared};
use crate::executor::{ArtifactOut, Stage, StageContext, StageOutcome};
use crate::report::write_reports;

pub(crate) struct ReportingStage(pub std::sync::Arc<VetShared>);

#[async_trait]
impl Stage for ReportingStage {
    fn name(&self) -> &str {
        STAGE_REPORTING
    }

    async fn run(&self, ctx: &StageContext<'_>) -> StageOutcome {
        let now = self.0.clock.now_ms();
        let dir = ctx.artifacts.root().display().to_string();
        let summary = format!("wrote report.html and report.json to {dir}");
        let mut projected = ctx.run.clone();
        let recorded = pipeline::record_result(
            &mut projected,
            ctx.stage,
            StageResult {
                passed: true,
                summary: summary.clone(),
                ..StageResult::default()
            },
            now,
        );
        if let Err(e) = recorded {
            return StageOutcome::fail(format!("cannot project the finished run: {e}"));
        }
        // Complete the projection (this is the last stage of a vet).
        let _ = pipeline::next(&mut projected, now);
        match write_reports(&projected, ctx.artifacts, None, now) {
            Ok([json, html]) => StageOutcome {
                artifacts: vec![ArtifactOut::Written(json), ArtifactOut::Written(html)],
                ..StageOutcome::pass(summary)
            },
            Err(e) => StageOutcome::fail(format!("cannot write the reports to {dir}: {e}")),
        }
    }
}

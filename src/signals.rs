//! Graceful stop on Ctrl-C and SIGTERM.

use weir_runtime::context::QueryContext;

/// Stops `query` gracefully on Ctrl-C or SIGTERM (a second signal exits at once).
pub fn stop_on_signal(query: QueryContext) {
    let mut signalled = false;
    let result = ctrlc::set_handler(move || {
        if signalled {
            eprintln!("weir: second interrupt, exiting now");
            std::process::exit(130);
        }
        signalled = true;
        eprintln!("weir: stopping gracefully (interrupt again to exit now)");
        query.request_stop();
    });
    if let Err(error) = result {
        tracing::warn!("cannot install the Ctrl-C handler: {error}");
    }
}

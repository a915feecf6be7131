//! Windows only: `netservd run --windows-service` runs the daemon under the
//! Service Control Manager. The SCM calls `service_main` on a thread of its
//! own; it reports Running, runs the same daemon as `netservd run` on a fresh
//! runtime, and turns the SCM's Stop and Shutdown controls into the same
//! `Event::Shutdown` that Ctrl-C sends (through `signals::SERVICE_EVENTS`), so
//! a service stop drains exactly like SIGTERM. The exit code becomes the
//! service's Win32 exit code.

use std::ffi::OsString;
use std::sync::OnceLock;
use std::time::Duration;

use tracing::error;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

use crate::EXIT_FAILURE;
use crate::daemon::ConfigSource;
use crate::signals::{Event, SERVICE_EVENTS};

/// The name the service is registered under (`sc create netservd ...`).
pub const SERVICE_NAME: &str = "netservd";

/// The config the SCM-started `service_main` should run (set before dispatch).
static SOURCE: OnceLock<ConfigSource> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hands this thread to the service dispatcher until the service stops.
pub fn run(source: ConfigSource) -> i32 {
    let _ = SOURCE.set(source);
    match service_dispatcher::start(SERVICE_NAME, ffi_service_main) {
        Ok(()) => crate::EXIT_OK,
        Err(e) => {
            error!(error = %e, "not started by the Service Control Manager; use `netservd run` without --windows-service from a console");
            EXIT_FAILURE
        }
    }
}

fn service_main(_args: Vec<OsString>) {
    let handler = |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            if let Some(tx) = SERVICE_EVENTS.get() {
                let _ = tx.send(Event::Shutdown("service stop"));
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = match service_control_handler::register(SERVICE_NAME, handler) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot register the service control handler");
            return;
        }
    };
    let report = |state, code: u32| {
        let _ = status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: if state == ServiceState::Running {
                ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
            } else {
                ServiceControlAccept::empty()
            },
            exit_code: ServiceExitCode::Win32(code),
            checkpoint: 0,
            wait_hint: Duration::from_secs(10),
            process_id: None,
        });
    };
    report(ServiceState::Running, 0);
    // run_daemon builds its runtime after reading `[daemon] workers`.
    let code = match SOURCE.get() {
        Some(source) => crate::cli::run_daemon(source.clone()),
        None => EXIT_FAILURE,
    };
    report(ServiceState::Stopped, code as u32);
}

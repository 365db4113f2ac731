//! Loads the quickstart configuration and prints it, secrets redacted.
//!
//! ```text
//! cp .env.example .env && cargo run -p groundwork-example-quickstart
//! ```
//! A missing or invalid key prints every problem at once and exits with code 2.

use groundwork_example_quickstart::Settings;

fn main() {
    let settings: Settings = groundwork_config::load_or_exit();
    match serde_json::to_string_pretty(&settings) {
        Ok(json) => println!("{json}"),
        Err(error) => {
            eprintln!("cannot print the configuration: {error}");
            std::process::exit(1);
        }
    }
}

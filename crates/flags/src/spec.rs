//! Variants and rules written as text, as operators type them on a command line.

use crate::{Flag, InvalidFlag, Operator, Payload, Rule, RuleValue, Variant};

fn invalid(flag: &str, field: String, problem: String) -> InvalidFlag {
    InvalidFlag::Field {
        flag: flag.to_owned(),
        field,
        problem,
    }
}

/// Parses the variants of flag `flag` from `NAME=WEIGHT` specs (`blue=50`) and `NAME=JSON`
/// payloads (`blue={"color":"#00f"}`), then checks them as every write does
/// ([`Flag::validate_targeting`]): weights adding up to 100, unique names, payloads that are
/// JSON. The error names the flag and the field.
///
/// ```
/// let variants = groundwork_flags::admin::parse_variants(
///     "checkout.button",
///     &["blue=50".into(), "green=50".into()],
///     &[r##"blue={"color":"#00f"}"##.into()],
/// )?;
/// assert_eq!(variants.len(), 2);
/// let refused = groundwork_flags::admin::parse_variants("checkout.button", &["blue=50".into()], &[]);
/// assert!(refused.is_err_and(|e| e.to_string().contains("add up to 50")));
/// # Ok::<(), groundwork_flags::InvalidFlag>(())
/// ```
pub fn parse_variants(
    flag: &str,
    specs: &[String],
    payloads: &[String],
) -> Result<Vec<Variant>, InvalidFlag> {
    let mut variants = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let Some((name, weight)) = spec.split_once('=') else {
            return Err(invalid(
                flag,
                format!("variants[{i}]"),
                format!("{spec:?} is not NAME=WEIGHT, such as blue=50"),
            ));
        };
        let weight = weight.trim().parse::<i32>().map_err(|_| {
            invalid(
                flag,
                format!("variants[{i}].weight"),
                format!("{weight:?} is not a whole number; a weight is a percentage"),
            )
        })?;
        variants.push(Variant::new(name.trim(), weight));
    }
    for spec in payloads {
        let Some((name, json)) = spec.split_once('=') else {
            return Err(invalid(
                flag,
                "variants[].payload".to_owned(),
                format!("{spec:?} is not VARIANT=JSON, such as blue={{\"color\":\"#00f\"}}"),
            ));
        };
        let Some(i) = variants.iter().position(|v| v.name == name.trim()) else {
            return Err(invalid(
                flag,
                "variants[].payload".to_owned(),
                format!("names variant {name:?}, which is not among the variants given"),
            ));
        };
        let payload: Payload = serde_json::from_str(json).map_err(|e| {
            invalid(
                flag,
                format!("variants[{i}].payload"),
                format!("is not JSON: {e}"),
            )
        })?;
        variants[i].payload = Some(payload);
    }
    Flag {
        variants,
        ..Flag::new(flag)
    }
    .validate_targeting_into(|f| f.variants)
}

/// Parses the rules of flag `flag` from `ATTRIBUTE OPERATOR VALUE` specs — `plan in
/// gold,platinum`, `region eq cn-east`, `seats >= 10`, `app_version semver_gte 2.1.0` — then checks
/// them as every write does. `in`/`not_in` take comma-separated strings; the numeric operators a
/// number; `eq` a number, `true`/`false`, or else a string (quote it, `"40"`, to compare a string
/// of digits).
///
/// ```
/// let rules = groundwork_flags::admin::parse_rules(
///     "matching.ai.boost",
///     &["plan in gold,platinum".into(), "seats >= 10".into()],
/// )?;
/// assert_eq!(rules.len(), 2);
/// let refused = groundwork_flags::admin::parse_rules("matching.ai.boost", &["plan like go%".into()]);
/// assert!(refused.is_err_and(|e| e.to_string().contains("rules[0].operator")));
/// # Ok::<(), groundwork_flags::InvalidFlag>(())
/// ```
pub fn parse_rules(flag: &str, specs: &[String]) -> Result<Vec<Rule>, InvalidFlag> {
    let mut rules = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let mut parts = spec.trim().splitn(3, char::is_whitespace);
        let (Some(attribute), Some(operator), Some(text)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(
                flag,
                format!("rules[{i}]"),
                format!(
                    "{spec:?} is not ATTRIBUTE OPERATOR VALUE, such as \"plan in gold,platinum\""
                ),
            ));
        };
        let Ok(operator) = operator.parse::<Operator>();
        let text = text.trim();
        let values = match operator {
            Operator::In | Operator::NotIn => text
                .split(',')
                .map(|v| RuleValue::String(v.trim().to_owned()))
                .collect(),
            Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => {
                let number = text.parse::<f64>().map_err(|_| {
                    invalid(
                        flag,
                        format!("rules[{i}].value"),
                        format!("{text:?} is not a number; `{operator}` compares numbers"),
                    )
                })?;
                vec![RuleValue::Number(number)]
            }
            Operator::Eq => vec![scalar(text)],
            _ => vec![RuleValue::String(text.to_owned())],
        };
        rules.push(Rule::new(attribute, operator, values));
    }
    Flag {
        rules,
        ..Flag::new(flag)
    }
    .validate_targeting_into(|f| f.rules)
}

/// `40` → number, `true` → boolean, `"40"` → the string `40`, anything else → that string.
fn scalar(text: &str) -> RuleValue {
    if let Some(quoted) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return RuleValue::String(quoted.to_owned());
    }
    match text {
        "true" => RuleValue::Bool(true),
        "false" => RuleValue::Bool(false),
        _ => text
            .parse::<f64>()
            .map_or_else(|_| RuleValue::String(text.to_owned()), RuleValue::Number),
    }
}

impl Flag {
    fn validate_targeting_into<T>(self, take: impl FnOnce(Self) -> T) -> Result<T, InvalidFlag> {
        self.validate_targeting()?;
        Ok(take(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn refusal<T: std::fmt::Debug>(result: Result<T, InvalidFlag>) -> String {
        match result {
            Ok(value) => panic!("accepted: {value:?}"),
            Err(problem) => problem.to_string(),
        }
    }

    #[test]
    fn bad_variant_specs_name_the_flag_and_field() {
        let cases = [
            (
                strings(&["blue=50", "green=40"]),
                strings(&[]),
                "variants[].weight",
            ),
            (strings(&["blue"]), strings(&[]), "variants[0]"),
            (
                strings(&["blue=half", "green=50"]),
                strings(&[]),
                "variants[0].weight",
            ),
            (
                strings(&["blue=50", "green=50"]),
                strings(&["blue={bad"]),
                "variants[0].payload is not JSON",
            ),
            (
                strings(&["blue=50", "green=50"]),
                strings(&["red=1"]),
                "variants[].payload",
            ),
        ];
        for (specs, payloads, field) in cases {
            let message = refusal(parse_variants("checkout.button", &specs, &payloads));
            assert!(message.contains(r#"flag "checkout.button""#), "{message}");
            assert!(message.contains(field), "{message} should name {field}");
        }
    }

    #[test]
    fn rule_specs_parse_into_typed_values() -> Result<(), InvalidFlag> {
        let rules = parse_rules(
            "f",
            &strings(&[
                "plan in gold, platinum",
                "seats >= 10",
                "beta eq true",
                "code eq \"40\"",
                "region eq cn-east",
                "app semver_lt 3.0.0-rc.1",
            ]),
        )?;
        assert_eq!(
            rules[0].values,
            vec![RuleValue::from("gold"), RuleValue::from("platinum")]
        );
        assert_eq!(
            (&rules[1].operator, &rules[1].values[..]),
            (&Operator::Gte, &[RuleValue::Number(10.0)][..])
        );
        assert_eq!(rules[2].values, vec![RuleValue::Bool(true)]);
        assert_eq!(rules[3].values, vec![RuleValue::from("40")]);
        assert_eq!(rules[4].values, vec![RuleValue::from("cn-east")]);
        for (spec, field) in [
            ("plan like go%", "rules[0].operator"),
            ("seats > ten", "rules[0].value"),
            ("app semver_gt latest", "rules[0].value"),
            ("plan", "rules[0]"),
        ] {
            let message = refusal(parse_rules("f", &strings(&[spec])));
            assert!(message.contains(field), "{message} should name {field}");
        }
        Ok(())
    }
}

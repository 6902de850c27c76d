//! PLACEHOLDER until the `rules` branch lands: every rule is refused.
use crate::filter::{Filter, FilterError};
use crate::schema::Collection;

pub struct Rule {
    src: String,
}
pub struct AuthFacts<'a> {
    pub user_id: Option<&'a str>,
    pub tenant_id: Option<&'a str>,
    pub role: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub email: Option<&'a str>,
}
pub enum Resolved {
    Allow,
    Deny,
    Where(Filter),
}
pub fn check_rule(src: &str, _c: &Collection, _roles: &[&str]) -> Result<Rule, FilterError> {
    let _ = Rule { src: src.into() };
    Err(FilterError {
        position: 1,
        message: "rules are not supported yet".into(),
    })
}
impl Rule {
    pub fn source(&self) -> &str {
        &self.src
    }
    pub fn resolve(&self, _auth: &AuthFacts) -> Resolved {
        Resolved::Deny
    }
}

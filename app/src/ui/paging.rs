//! A list page's state lives in the URL so any view can be bookmarked.
//! MLflow pages forward only, with opaque tokens; to offer "Previous", the URL
//! carries the tokens of the pages before this one (`trail`, one value each,
//! the first page as an empty value). Each page names the other parameters
//! it keeps across pages (a search term, a filter, a sort order).

use leptos_router::params::ParamsMap;

use crate::error::AppError;
use crate::model::{DEFAULT_PAGE_SIZE, ListQuery, MAX_PAGE_SIZE};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListState {
    /// The page's own path, which its links lead back to.
    pub path: String,
    /// The page's own parameters, in the order the page named them, a key
    /// once per value; empty values are left out.
    pub kept: Vec<(&'static str, String)>,
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
    pub trail: Vec<String>,
}

impl ListState {
    pub fn from_params(
        path: impl Into<String>,
        keep: &[&'static str],
        params: &ParamsMap,
    ) -> Result<Self, AppError> {
        let non_empty = |key: &str| params.get(key).filter(|value| !value.trim().is_empty());
        let page_size = match non_empty("size") {
            None => None,
            Some(raw) => Some(parse_page_size(&raw)?),
        };
        Ok(Self {
            path: path.into(),
            kept: keep
                .iter()
                .flat_map(|key| {
                    let values = params.get_all(key).unwrap_or_default();
                    values
                        .into_iter()
                        .filter(|value| !value.trim().is_empty())
                        .map(move |value| (*key, value.trim().to_string()))
                })
                .collect(),
            page_size,
            page_token: non_empty("page"),
            trail: params.get_all("trail").unwrap_or_default(),
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.kept
            .iter()
            .find(|(kept, _)| *kept == key)
            .map(|(_, value)| value.as_str())
    }

    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.kept
            .iter()
            .filter(move |(kept, _)| *kept == key)
            .map(|(_, value)| value.as_str())
    }

    /// The same list with one kept parameter changed, from its first page.
    pub fn with(&self, key: &'static str, value: Option<String>) -> Self {
        let mut changed = Self {
            page_token: None,
            trail: Vec::new(),
            ..self.clone()
        };
        match changed.kept.iter().position(|(kept, _)| *kept == key) {
            Some(at) => {
                changed.kept.retain(|(kept, _)| *kept != key);
                if let Some(value) = value {
                    changed
                        .kept
                        .insert(at.min(changed.kept.len()), (key, value));
                }
            }
            None => changed.kept.extend(value.map(|value| (key, value))),
        }
        changed
    }

    /// What a form that sets `key` must carry along to keep the rest of the
    /// list's state: every other kept parameter, and the page size.
    pub fn carried_except(&self, key: &str) -> Vec<(&'static str, String)> {
        self.kept
            .iter()
            .filter(|(kept, _)| *kept != key)
            .cloned()
            .chain(self.page_size.map(|size| ("size", size.to_string())))
            .collect()
    }

    /// The sort direction (`dir`): descending unless it says `asc`.
    pub fn descending(&self) -> Result<bool, AppError> {
        match self.get("dir") {
            None | Some("desc") => Ok(true),
            Some("asc") => Ok(false),
            Some(other) => Err(AppError::InvalidInput(format!(
                "Sort direction must be asc or desc, not \"{other}\""
            ))),
        }
    }

    /// The query for a list searched by name (`q`) and sorted by `order`.
    pub fn query(&self) -> Result<ListQuery, AppError> {
        Ok(ListQuery {
            name_contains: self.get("q").map(str::to_string),
            order_by: self.get("order").map(str::to_string),
            descending: self.descending()?,
            page_token: self.page_token.clone(),
            page_size: self.page_size(),
        })
    }

    pub fn page_size(&self) -> u32 {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE)
    }

    pub fn first_page_href(&self) -> String {
        self.href(None, &[])
    }

    /// The first page again, `size` rows to a page.
    pub fn page_size_href(&self, size: u32) -> String {
        let mut resized = self.clone();
        resized.page_size = Some(size);
        resized.href(None, &[])
    }

    pub fn next_page_href(&self, next_token: &str) -> String {
        let mut trail = self.trail.clone();
        trail.push(self.page_token.clone().unwrap_or_default());
        self.href(Some(next_token), &trail)
    }

    /// `None` on the first page.
    pub fn previous_page_href(&self) -> Option<String> {
        let (previous, rest) = self.trail.split_last()?;
        let token = Some(previous.as_str()).filter(|token| !token.is_empty());
        Some(self.href(token, rest))
    }

    pub fn page_number(&self) -> usize {
        self.trail.len() + 1
    }

    fn href(&self, page_token: Option<&str>, trail: &[String]) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.kept {
            query.append_pair(key, value);
        }
        if let Some(size) = self.page_size {
            query.append_pair("size", &size.to_string());
        }
        if let Some(token) = page_token {
            query.append_pair("page", token);
        }
        for token in trail {
            query.append_pair("trail", token);
        }
        let query = query.finish();
        if query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{query}", self.path)
        }
    }
}

pub fn parse_page_size(raw: &str) -> Result<u32, AppError> {
    raw.trim()
        .parse::<u32>()
        .ok()
        .filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
        .ok_or_else(|| {
            AppError::InvalidInput(format!(
                "Page size must be a whole number from 1 to {MAX_PAGE_SIZE}, not \"{raw}\""
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: &[&str] = &["q"];

    fn params(pairs: &[(&'static str, &str)]) -> ParamsMap {
        let mut map = ParamsMap::new();
        for (key, value) in pairs {
            map.insert(*key, value.to_string());
        }
        map
    }

    #[test]
    fn empty_url_asks_for_the_first_page_with_the_default_size() {
        let state = ListState::from_params("/experiments", KEEP, &ParamsMap::new()).unwrap();
        let query = state.query().unwrap();
        assert_eq!(
            (query.page_size, query.page_token, query.order_by),
            (DEFAULT_PAGE_SIZE, None, None)
        );
        assert!(query.descending);
        assert_eq!(state.previous_page_href(), None);
        assert_eq!(state.first_page_href(), "/experiments");
    }

    #[test]
    fn next_then_previous_returns_to_the_same_page() {
        let first = ListState::from_params(
            "/experiments",
            KEEP,
            &params(&[("q", "iris"), ("size", "5")]),
        )
        .unwrap();
        let second_href = first.next_page_href("tok+2/=");
        assert_eq!(
            second_href,
            "/experiments?q=iris&size=5&page=tok%2B2%2F%3D&trail="
        );

        let second = state_from_href(&second_href);
        assert_eq!(second.page_token.as_deref(), Some("tok+2/="));
        assert_eq!(second.page_number(), 2);
        let third = state_from_href(&second.next_page_href("tok3"));
        assert_eq!(third.trail, vec![String::new(), "tok+2/=".to_string()]);

        let back_to_second = state_from_href(&third.previous_page_href().unwrap());
        assert_eq!(back_to_second, second);
        let back_to_first = state_from_href(&second.previous_page_href().unwrap());
        assert_eq!(back_to_first, first);
    }

    #[test]
    fn only_the_pages_own_parameters_are_kept() {
        let keep = &["filter", "order"];
        let state = ListState::from_params(
            "/experiments/7",
            keep,
            &params(&[
                ("filter", "metrics.auc > 0.9"),
                ("q", "ignored"),
                ("order", ""),
            ]),
        )
        .unwrap();
        assert_eq!(
            state.kept,
            vec![("filter", "metrics.auc > 0.9".to_string())]
        );
        assert_eq!(
            state.first_page_href(),
            "/experiments/7?filter=metrics.auc+%3E+0.9"
        );
    }

    #[test]
    fn repeated_parameters_keep_every_value() {
        let state = ListState::from_params(
            "/experiments/7",
            &["col", "order"],
            &params(&[
                ("col", "params.lr"),
                ("col", "metrics.auc"),
                ("order", "run_name"),
            ]),
        )
        .unwrap();
        assert_eq!(
            state.get_all("col").collect::<Vec<_>>(),
            vec!["params.lr", "metrics.auc"]
        );
        let href = state.with("order", Some("status".into())).first_page_href();
        assert_eq!(
            href,
            "/experiments/7?col=params.lr&col=metrics.auc&order=status"
        );
        assert_eq!(
            state.with("col", None).first_page_href(),
            "/experiments/7?order=run_name"
        );
    }

    #[test]
    fn changing_a_parameter_starts_again_from_the_first_page() {
        let on_page_two = state_from_href("/experiments?q=iris&page=t2&trail=");
        let sorted = on_page_two.with("order", Some("name".into()));
        assert_eq!(sorted.first_page_href(), "/experiments?q=iris&order=name");
        assert_eq!(sorted.page_number(), 1);
        assert_eq!(
            sorted.with("q", None).with("order", None).first_page_href(),
            "/experiments"
        );
    }

    #[test]
    fn bad_page_sizes_are_refused_with_the_value() {
        for raw in ["0", "-3", "abc", "501"] {
            let err =
                ListState::from_params("/models", KEEP, &params(&[("size", raw)])).unwrap_err();
            assert!(err.to_string().contains(raw), "{err}");
        }
    }

    fn state_from_href(href: &str) -> ListState {
        let (path, query) = href.split_once('?').unwrap_or((href, ""));
        let mut map = ParamsMap::new();
        // As the router builds it on the server: decoded pairs, then `insert`.
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            map.insert(key.into_owned(), value.into_owned());
        }
        ListState::from_params(path, &["q", "order"], &map).unwrap()
    }
}

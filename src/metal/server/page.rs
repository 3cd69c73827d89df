//! Page-number pagination with the API's `meta` object.

use serde::Deserialize;

use crate::metal::api::{Href, Meta};

/// The API's default page size when a client gives none.
const DEFAULT_PER_PAGE: u32 = 10;
/// The largest page the server hands out.
const MAX_PER_PAGE: u32 = 1000;

/// The query of a list request.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
    /// Only devices carrying this tag.
    pub tag: Option<String>,
}

/// Cuts page `query.page` out of `items` and describes it. `path` is the list's path, for
/// the `href`s.
pub fn paginate<T>(items: Vec<T>, query: &ListQuery, path: &str) -> (Vec<T>, Meta) {
    let per_page = query
        .per_page
        .unwrap_or(DEFAULT_PER_PAGE)
        .clamp(1, MAX_PER_PAGE);
    let page = query.page.unwrap_or(1).max(1);
    let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let last_page = total.div_ceil(per_page).max(1);
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let take = usize::try_from(per_page).unwrap_or(usize::MAX);
    let items = items.into_iter().skip(skip).take(take).collect();
    let href = |n: u32| Href {
        href: format!("{path}?page={n}&per_page={per_page}"),
    };
    let meta = Meta {
        current_page: Some(page),
        last_page: Some(last_page),
        total: Some(total),
        first: Some(href(1)),
        last: Some(href(last_page)),
        previous: (page > 1).then(|| href(page - 1)),
        next: (page < last_page).then(|| href(page + 1)),
    };
    (items, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(page: u32, per_page: u32) -> ListQuery {
        ListQuery {
            page: Some(page),
            per_page: Some(per_page),
            tag: None,
        }
    }

    #[test]
    fn pages_cut_the_list_and_link_their_neighbours() {
        let (items, meta) = paginate((1..=5).collect(), &query(2, 2), "/x");
        assert_eq!(items, vec![3, 4]);
        assert_eq!(
            (meta.current_page, meta.last_page, meta.total),
            (Some(2), Some(3), Some(5))
        );
        assert_eq!(
            meta.next.map(|h| h.href),
            Some("/x?page=3&per_page=2".to_owned())
        );
        assert_eq!(
            meta.previous.map(|h| h.href),
            Some("/x?page=1&per_page=2".to_owned())
        );
    }

    #[test]
    fn an_empty_list_is_one_empty_page() {
        let (items, meta) = paginate(Vec::<u8>::new(), &ListQuery::default(), "/x");
        assert!(items.is_empty());
        assert_eq!(
            (meta.current_page, meta.last_page, meta.total),
            (Some(1), Some(1), Some(0))
        );
        assert!(meta.next.is_none());
    }
}

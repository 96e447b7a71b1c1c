with

source as (

    select * from {{ source('evo', 'synced_days') }}

),

renamed as (

    select
        ----------  ids
        cast(partition_date as date) as partition_date,
        sync_id,

        ----------  row counts of the day's sync
        cast(sessions as integer) as session_count,
        cast(members as integer) as member_count,
        cast(log_rows as integer) as log_entry_count,
        cast(breadcrumbs as integer) as breadcrumb_count,
        cast(pages as integer) as page_count,
        cast(rejected as integer) as rejected_count,

        ----------  booleans
        cast(complete as boolean) as is_complete,

        ----------  timestamps
        cast(synced_at as timestamp with time zone) as synced_at

    from source

)

select * from renamed
